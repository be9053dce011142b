"""MiniGPT-4 Studio: `python app.py` (also the Hugging Face Spaces entry point)."""

from minigpt4_ui import backend, ui
from minigpt4_ui.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    connected = backend.connect(settings)
    try:
        # Server name and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set.
        ui.build(connected, settings).launch(theme=ui.THEME, css=ui.CSS,
                                             max_file_size=f"{settings.max_upload_mb}mb")
    finally:
        connected.close()


if __name__ == "__main__":
    main()
