"""Send rules (pure layer): when, how often, what kind and for how long a send may go out.

The consent table in ``keywords/`` answers whether a person has consented; this package
answers the rest from rule data (``config/rules/*.toml``): calling-hour windows in the
recipient's local time, frequency caps, message categories and the consent each needs, how
long a consent basis lasts, and opt-out deadlines. Standard library and ``phonenumbers``
only; the loader is the one place that reads files. docs/rules.md gives the sources.
"""
