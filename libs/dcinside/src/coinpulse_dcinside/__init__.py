"""The DCInside page format, once: parsers for the list, view and comment pages, KST dates, the records."""
