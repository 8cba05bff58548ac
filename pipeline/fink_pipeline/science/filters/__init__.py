"""The built-in science filters, one file each; fast_transients.py is the template."""
