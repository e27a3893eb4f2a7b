"""Small helpers every stage shares, with no knowledge of Django apps: text and URLs from untrusted
sources made safe to show, bounded HTTP, and a keyed thread pool."""
