"""One module per `specc` subcommand; each defines `register(subparsers)`."""
