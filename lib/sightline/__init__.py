"""sightline: do vision models look where experts look?"""

__version__ = "0.1.0"
