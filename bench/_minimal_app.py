"""The startup/memory baseline: the smallest Gradio app with the same `/ask` signature."""

import gradio as gr


def ask(image, prompt):
    yield "ok"


with gr.Blocks() as demo:
    image = gr.Image(type="filepath")
    prompt = gr.Textbox()
    answer = gr.Textbox()
    gr.Button().click(ask, inputs=[image, prompt], outputs=answer, api_name="ask")
demo.queue().launch()
