"""Interfaces: the command line, the Python API and the web workbench."""
