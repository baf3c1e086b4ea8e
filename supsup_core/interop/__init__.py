"""supsup_core.interop: bridges between SupSup models and other frameworks' conventions.

Each bridge is its own module and imports its framework only when that module is imported
(``supsup_core.interop.avalanche`` needs the ``avalanche`` extra); importing this package
imports none of them.
"""
