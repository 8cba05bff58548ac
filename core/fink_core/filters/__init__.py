"""Science filters written by scientists: checked before they run, isolated when they run.

A science filter is one Python function, inline in a `ScienceFilter` resource,
whose parameters name the alert columns it reads and which returns one boolean
per alert (Fink's convention, as in the fink-filters package).

- `fink_core.filters.source`: static checks of the code (stdlib `ast` only, so
  the operator can run them at admission without pandas or Spark).
- `fink_core.filters.sandbox`: runs the code in a separate, limited process
  (time, memory, no network, no files, no programs) for the enrichment core.

Importing this package imports neither pandas nor numpy.
"""
