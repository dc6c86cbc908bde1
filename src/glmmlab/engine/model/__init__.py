"""The model: the formula language and its parser, random-effects terms and the model frame, the model
specification, the options declared as data, checks of the design, and the limits."""
