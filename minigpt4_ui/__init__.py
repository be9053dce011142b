"""MiniGPT-4 Studio: a Gradio demo for daanelson/minigpt-4 on Replicate's predictions API."""
