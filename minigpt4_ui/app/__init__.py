"""The Gradio app: the page (`ui`), its event handlers, the conversation logic and the app's
settings and guards. It reaches a predictions API only through `minigpt4_ui.replicate_api`, and
imports the server only where it starts the embedded one (`backend`)."""
