"""The pipeline's Spark job on Kubernetes: objects rendered from templates, a driver supervised.

`render.py` turns a pipeline and the operator's job settings into Kubernetes
objects (pure, from the Jinja2 templates in templates/); `supervise.py` decides,
from what the driver pod looks like, what to do and what to report (pure);
`kube.py` is the adapter that applies, observes and deletes.
"""
