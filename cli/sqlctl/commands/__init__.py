"""One module per noun/verb of the CLI; each imports only typer and sqlctl's light modules at import time."""
