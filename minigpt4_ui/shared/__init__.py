"""Facts both halves rely on: the model's inputs and their bounds (`schema`, `model_schema`), the
API's facts (`facts`), the image limits, the URL policy and webhook signatures. Nothing here
imports the app or the server."""
