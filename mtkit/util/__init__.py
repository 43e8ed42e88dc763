"""The foundation: small tools every box uses (the device, the repository root, one registry type, one
JSON-ready converter, marked sections of a markdown file).

May import: nothing of mtkit (the standard library, torch and numpy only).
"""
