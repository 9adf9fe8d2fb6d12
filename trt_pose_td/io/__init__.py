"""Frame sources, result sinks and drawing."""
