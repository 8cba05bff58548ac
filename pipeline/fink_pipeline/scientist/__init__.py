"""`fink-filter`: a scientist's path from an idea to a live ScienceFilter, without big-data training.

init (a template filter, its test, its resource) -> test (static checks and a
sandboxed run on realistic alerts, on this machine) -> apply (the resource, then
Validated and Live as the operator and the pipelines report them) -> tail (the
alerts the filter selected). One module per step; cli.py only parses arguments.
"""
