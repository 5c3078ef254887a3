"""The web app (`python -m demo`, `make demo`): a Gradio front end of a running finer server.

It talks to Triton only through `client.FinerClient`; no model runs in its process, so what it
shows is what the server returns. Three tabs: tag pasted text (`tagging`), check an inline-XBRL
filing against the filer's own tags (`filing_review`), and the server's status (`status`).
`app` lays them out; `browser` drives the app in headless Chromium for the browser tests and the
README screenshots.
"""
import os

# Gradio reports usage to its makers and checks PyPI for a newer version unless this is off; the app
# must not reach the internet, so it is off whatever the environment says.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
