"""The Gradio layout of the web app: three tabs wired to `tagging`, `filing_review` and `status`.

Every handler turns the app's own refusals (`InputProblem`, `FilingProblem`) and the client's typed
errors (`FinerError`) into a message in the page, so a bad input or a server that is down or restarts
mid-request leaves the app up and the page readable.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from client import FinerClient, FinerError
from demo.filing_review import CATEGORIES, FILING_LIMIT_MB, MAX_FILING_BYTES, MEANINGS, ROW_COLUMNS, \
    UPLOAD_EXTENSIONS, FilingProblem, Review, check_filing, write_csv
from demo.status import status_markdown
from demo.tagging import ENTITY_COLUMNS, EXAMPLES, MAX_TEXT_CHARS, SCOPES, InputProblem, Tagged, entity_rows, \
    highlight_html, shown, summary, tag_text
from finer.labels import finer_types

CSS = """
.finer-text { white-space: pre-wrap; line-height: 2.4; font-size: 1.05rem; }
.finer-entity { border-radius: 4px; padding: 1px 4px; color: #111; }
.finer-label { font-size: 0.7rem; font-weight: 600; margin-left: 4px; opacity: 0.75; }
.finer-counts td, .finer-counts th { padding: 4px 12px; text-align: left; }
.finer-counts td.count { text-align: right; font-weight: 600; font-variant-numeric: tabular-nums; }
"""


def problem(error: Exception, doing: str) -> str:
    """A refusal or a server error as one readable paragraph."""
    if isinstance(error, FinerError):
        return f"⚠️ **The server could not {doing}.** {error}"
    return f"⚠️ {error}"


def counts_html(review: Review) -> str:
    counts = review.counts
    rows = "".join(f'<tr data-category="{c}"><td>{c}</td><td class="count">{counts[c]}</td>'
                   f'<td>{MEANINGS[c]}</td></tr>' for c in CATEGORIES)
    return f'<table class="finer-counts"><tr><th>outcome</th><th>count</th><th>meaning</th></tr>{rows}</table>'


def review_summary(review: Review) -> str:
    meta = review.meta
    lines = [f"**{meta.source}**: {meta.company}, {meta.form or 'form unknown'}"
             + (f" for the period ending {meta.period}" if meta.period else "") + ".",
             f"{review.sentences:,} narrative sentences; the {review.sent:,} that hold a number were tagged through "
             f"the server. Checked in **{review.seconds:.1f} s**."]
    if review.outside_types:
        lines.append(f"{review.outside_types:,} filer tags use concepts the model does not serve: they count only "
                     "where the model tagged the same number.")
    return "\n\n".join(lines)


def build(client: FinerClient, workdir: Path) -> gr.Blocks:
    """The app for the server `client` points at; review CSVs are written into `workdir`."""
    # Uploaded filings and the CSVs Gradio serves are deleted after an hour and when the app stops.
    with gr.Blocks(title="FiNER-139 tagger", delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# FiNER-139 tagger\nNumbers in SEC filings tagged with their XBRL concept by the model "
                    f"that Triton serves at {client.protocol} `{client.url}`.")
        with gr.Tabs():
            with gr.Tab("Tag text", id="tag"):
                tag_tab(client)
            with gr.Tab("Check a filing", id="filing"):
                filing_tab(client, workdir)
            with gr.Tab("Server status", id="status"):
                status_tab(client, app)
    return app


def tag_tab(client: FinerClient) -> None:
    text = gr.Textbox(label=f"Text (up to {MAX_TEXT_CHARS:,} characters)", lines=5, elem_id="tag-input",
                      placeholder="Paste a passage of a 10-K or 10-Q ...")
    gr.Examples([[e.text] for e in EXAMPLES], inputs=[text], label="Examples: real sentences from 10-K filings",
                example_labels=[e.button for e in EXAMPLES], elem_id="tag-examples")
    with gr.Row():
        scope = gr.Radio(list(SCOPES), value="all", label="Labels", elem_id="tag-scope")
        chosen = gr.Dropdown(finer_types(), multiselect=True, label="Chosen types", visible=False, elem_id="tag-types")
        threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Score threshold", elem_id="tag-threshold")
    button = gr.Button("Tag", variant="primary", elem_id="tag-button")
    message = gr.Markdown(elem_id="tag-message")
    highlighted = gr.HTML(elem_id="tag-highlighted")
    table = gr.Dataframe(headers=ENTITY_COLUMNS, interactive=False, elem_id="tag-table")
    answer = gr.State(None)

    def render(tagged: Tagged, cut: float):
        visible = shown(tagged.entities, cut)
        return summary(tagged, cut), highlight_html(tagged.text, visible), entity_rows(visible)

    def on_tag(value, scope_value, types, cut):
        try:
            tagged = tag_text(client, value, scope_value, types)
        except (InputProblem, FinerError) as e:
            return None, problem(e, "tag the text"), "", []
        return tagged, *render(tagged, cut)

    def on_threshold(tagged, cut):
        return render(tagged, cut) if tagged is not None else (gr.skip(), gr.skip(), gr.skip())

    inputs, outputs = [text, scope, chosen, threshold], [answer, message, highlighted, table]
    button.click(on_tag, inputs, outputs)
    text.submit(on_tag, inputs, outputs)
    threshold.change(on_threshold, [answer, threshold], [message, highlighted, table])
    scope.change(lambda s: gr.update(visible=s == "chosen types"), scope, chosen)


def filing_tab(client: FinerClient, workdir: Path) -> None:
    gr.Markdown("Upload an inline-XBRL 10-K or 10-Q (the primary document, `.htm` or `.htm.gz`, up to "
                f"{FILING_LIMIT_MB} MB of HTML). Its narrative sentences are read as the corpus builder "
                "reads them, tagged through the server, and compared with the filer's own `ix:nonFraction` tags.")
    upload = gr.File(label="Filing", file_types=UPLOAD_EXTENSIONS, type="filepath", elem_id="filing-upload")
    threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Score threshold for the model's entities",
                          elem_id="filing-threshold")
    button = gr.Button("Check the filing", variant="primary", elem_id="filing-button")
    message = gr.Markdown(elem_id="filing-message")
    counts = gr.HTML(elem_id="filing-counts")
    download = gr.DownloadButton("Download the review (CSV)", visible=False, elem_id="filing-csv")
    table = gr.Dataframe(headers=ROW_COLUMNS, interactive=False, wrap=True, elem_id="filing-table",
                         column_widths=["11%", "9%", "22%", "22%", "6%", "30%"])

    def on_check(path, cut, progress=gr.Progress()):
        if not path:
            return "⚠️ Upload a filing first.", "", [], gr.update(visible=False)
        progress(0.0, desc="reading the filing")
        try:
            review = check_filing(client, path, cut, lambda done, total: progress(
                done / total, desc=f"tagged {done:,} of {total:,} sentences"))
        except (FilingProblem, FinerError) as e:
            return problem(e, "tag the filing"), "", [], gr.update(visible=False)
        return review_summary(review), counts_html(review), review.rows, \
            gr.update(value=str(write_csv(review, workdir)), visible=True)

    button.click(on_check, [upload, threshold], [message, counts, table, download])


def status_tab(client: FinerClient, app: gr.Blocks) -> None:
    refresh = gr.Button("Refresh", elem_id="status-button")
    text = gr.Markdown(elem_id="status-text")
    labels = gr.Dataframe(headers=["entity types served"], interactive=False, elem_id="status-labels")
    refresh.click(lambda: status_markdown(client), None, [text, labels])
    app.load(lambda: status_markdown(client), None, [text, labels])


def launch(client: FinerClient, port: int, workdir: Path) -> None:
    """Serve the app on 127.0.0.1:`port` until interrupted: no share link, no server-side rendering."""
    build(client, workdir).launch(
        server_name="127.0.0.1", server_port=port, share=False, max_file_size=MAX_FILING_BYTES,
        allowed_paths=[str(workdir)], ssr_mode=False, mcp_server=False, pwa=False, css=CSS,
        footer_links=["settings"], quiet=True)
