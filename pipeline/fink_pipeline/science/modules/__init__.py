"""The built-in science modules, one file each."""
