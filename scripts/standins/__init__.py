"""Local stand-ins of the cloud providers, speaking their real wire protocols, for tests and benchmarks.

- `deepgram.py`: Deepgram live transcription (`/v1/listen` websocket), real recognition of the audio;
- `openai_chat.py`: OpenAI Chat Completions (`POST /v1/chat/completions`, streaming, tools);
- `cartesia.py`: Cartesia TTS (`/tts/websocket`), real synthesized audio.

Each has a fixed, configurable delay (STT final after the end of speech, LLM time to first token and
tokens per second, TTS time to first audio); `app.py` serves all three on one loopback port, and
`python -m scripts.standins --port 8765` runs them. The product only needs its base URL settings
pointed at them (`StandinServer.env()` lists them). These live with the tests and benchmarks: the
product packages never import them.
"""
