"""The events console: a small web app, beside the receiver, to see, search and recover
events in a browser (`cli console`). Nothing in the receiver imports it."""
