"""Test doubles and synthetic writers, built from the producers' schemas and code: a local CAVE
stand-in server, an NWB scan-file writer in the release's layout, a full-volume synapse
generator, and test oracles (:mod:`.oracles`). No stage imports this package (import-linter
contract); tests, benches and demos do."""
