"""The audience baseline: the barest Gradio chat that streams the same answers as the app.

An image, a question box, a Send button and a messages Chatbot, chained as the app chains them:
`send` (unqueued) puts the question in the chat, then `respond` (queued, the app's concurrency
limit) streams BARE_ANSWER word by word at PACE words per second from an async generator. No
backend, no checks: what Gradio alone costs for the same page flow.

    python bench/_bare_chat_app.py   (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose where)
"""

import asyncio
import os
import re

import gradio as gr

PACE = float(os.environ.get("BARE_WORDS_PER_SECOND", "20"))
# Each chunk keeps its leading blank, as the app's predictor streams them.
WORDS = re.findall(r"\s*\S+", os.environ.get("BARE_ANSWER", "word " * 60))
CONCURRENCY_LIMIT = int(os.environ.get("BARE_CONCURRENCY_LIMIT", "64"))


def send(image, prompt, history):
    """The question in the chat, as text: the photo the app shows with it costs Gradio a file check
    on every update, and that is counted against the app."""
    return [*history, {"role": "user", "content": prompt}], ""


async def respond(image, history):
    answer = {"role": "assistant", "content": ""}
    history = [*history, answer]
    for word in WORDS:
        await asyncio.sleep(1 / PACE)
        answer["content"] += word
        yield history


with gr.Blocks() as demo:
    chatbot = gr.Chatbot()
    image = gr.Image(type="filepath")
    prompt = gr.Textbox()
    button = gr.Button("Send")
    button.click(send, inputs=[image, prompt, chatbot], outputs=[chatbot, prompt], queue=False,
                 api_name="send").success(respond, inputs=[image, chatbot], outputs=chatbot,
                                          concurrency_limit=CONCURRENCY_LIMIT, api_name="respond")
demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT).launch()
