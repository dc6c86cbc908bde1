"""routes layer."""
