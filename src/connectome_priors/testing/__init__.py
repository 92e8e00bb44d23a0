"""Test doubles and synthetic writers, built from the producers' schemas and code: a local CAVE
stand-in server, an NWB scan-file writer in the release's layout, and a full-volume synapse
generator. No stage imports this package (import-linter contract); tests, benches and demos do."""
