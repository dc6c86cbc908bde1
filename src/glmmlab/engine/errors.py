"""The one exception the engine raises for input a person can fix."""


class GlmmInputError(ValueError):
    """Bad input or a bad option. The message names the column or option and says what to do."""
