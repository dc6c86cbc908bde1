"""Views of a fit: the one table view for text, web and reports, number formatting, plain JSON values, plain
text tables, plots."""
