"""The staff web app served by intake under /app (server-rendered pages, a small script, no build step)."""
