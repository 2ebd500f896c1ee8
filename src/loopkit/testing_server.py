"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks of API teachers.

A stdlib ``ThreadingHTTPServer`` answering ``POST .../chat/completions`` as the two-call protocol
of ``teachers.llm`` expects: call 1 (a prompt starting "Here is an example question") gets a new
question, call 2 a worked answer ending in ``#### 42`` (or the next of ``answers``); judge and referee prompts get grades (1-10)
that depend on the prompt. ``delay`` adds latency to every reply; ``peak`` is the most requests it
answered at once; ``answered`` counts the replies per distinct request (``duplicates``: paid twice);
``seeds`` lists each request's sampling ``seed`` (None where it sent none), in arrival order.

Faults are queued one per request (``FAULTS`` says what each does): transport faults (a 429 with
Retry-After, a 500, a reply slower than a client's timeout, one that drips a byte at a time,
malformed JSON, an HTML page) and answers that are off-spec (no choices, null content, ...).
``allow(n)`` answers only n more requests and holds the rest (a client that stays mid-round
as long as a test needs).

    with ChatServer() as server:      # started on a free port
        server.delay = 0.2
        ... api_base=server.url ...
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "6 * 7 = 42\n#### 42"

FAULTS = {
    # transport: the model's answer never arrives (a client retries these)
    "401": "401 with a JSON error (a wrong key: not retried)",
    "429": "429 Too Many Requests with Retry-After: 0.1",
    "500": "500 with a JSON error",
    "slow": "the reply after `slow` seconds",
    "drip": "the reply one byte every `drip` seconds (each read is quick; the whole reply is not)",
    "malformed": "200 with truncated JSON",
    "html": "200 with an HTML page (a proxy or a wrong api_base)",
    "html-502": "502 with an HTML error page",
    "plain": "200 with a body that is not JSON, as text/plain",
    # answered (and counted in `answered`: paid for) but off-spec
    "surrogate": "the text ends with a lone surrogate (the JSON escape \\ud800)",
    "huge": "the text is `huge` characters long, whatever max_tokens says",
    "no-choices": "choices: []",
    "parts": "content as a list of parts [{type: text, text: ...}]",
    "null-content": "content: null",
    "no-message": "a choice without a message",
    "text-type": "the right JSON, as Content-Type text/plain",
}


class _Server(ThreadingHTTPServer):
    # The stdlib's backlog of 5 drops the SYNs of a burst of concurrent connections, and the
    # client's 1 s SYN retransmit then dominates any latency measured through this server.
    request_queue_size = 128
    daemon_threads = True


class ChatServer:
    """Scripted chat completions; ``faults`` are used up one per request, in arrival order."""

    def __init__(self) -> None:
        self.faults: list[str] = []  # names from FAULTS, or "ok"
        self.unparseable = 0  # this many answer calls get a reply without a final line
        self.answers: list[str] = []  # the next answer calls' texts, in arrival order (then ANSWER)
        self.models: set[str] | None = None  # the models served (others get a 404, as OpenAI's API answers); None: any
        self.echo_key = False  # answers quote the request's Authorization header (a leaky backend)
        self.slow = 1.0  # seconds a "slow" reply takes
        self.drip = 0.5  # seconds between the bytes of a "drip" reply
        self.huge = 12_000_000  # characters of a "huge" reply
        self.delay = 0.0  # seconds every reply takes
        self.requests = 0
        self.in_flight = self.peak = 0  # requests being answered now, and at most
        self.authorization: set[str] = set()
        self.seeds: list[int | None] = []  # each request's sampling seed, in arrival order
        self.answered: Counter[str] = Counter()  # successful replies per distinct request body
        self.lock = threading.Lock()
        self.allowance: int | None = None  # requests still answered before the rest are held (None: all)
        self._gate = threading.Condition()
        self._dropped = 0  # held requests up to this ticket are refused (503) instead of answered
        self._tickets = 0
        self.held = 0  # requests waiting for the allowance now
        self.url = ""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "ChatServer":
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with chat.lock:
                    chat.in_flight += 1
                    chat.peak = max(chat.peak, chat.in_flight)
                time.sleep(chat.delay)
                if chat.admit():
                    status, headers, data = chat.reply(self.headers, body)
                else:
                    status, headers, data = 503, {}, b'{"error": {"message": "dropped"}}'
                drip = headers.pop("X-Drip", None)
                with chat.lock:
                    chat.in_flight -= 1
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if drip is None:
                        self.wfile.write(data)
                    for i in range(len(data) if drip else 0):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(chat.drip)
                except OSError:  # the client gave up on a slow reply
                    pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        return self

    def allow(self, n: int | None, drop_held: bool = False) -> None:
        """Answer only ``n`` more requests (None: every one); ``drop_held``: refuse the requests held now
        (their client is gone: answering them would count calls nobody received)."""
        with self._gate:
            self.allowance = n
            if drop_held:
                self._dropped, self.held = self._tickets, 0
            self._gate.notify_all()

    def admit(self) -> bool:
        """Wait while the allowance is used up; False if this request was dropped meanwhile."""
        with self._gate:
            self._tickets += 1
            ticket = self._tickets
            self.held += 1
            self._gate.wait_for(lambda: ticket <= self._dropped or self.allowance is None or self.allowance > 0)
            if ticket <= self._dropped:
                return False
            self.held -= 1
            if self.allowance is not None:
                self.allowance -= 1
            return True

    @property
    def duplicates(self) -> int:
        """Requests answered again although an identical request had been answered before: paid twice."""
        return sum(n - 1 for n in self.answered.values())

    def stop(self) -> None:
        self.allow(None, drop_held=True)  # no handler thread stays waiting
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reply(self, headers: Any, body: dict) -> tuple[int, dict, bytes]:
        with self.lock:
            self.requests += 1
            self.authorization.add(headers.get("Authorization", ""))
            self.seeds.append(body.get("seed"))
            fault = self.faults.pop(0) if self.faults else None
            content = body["messages"][-1]["content"]
            asks_question = content.startswith("Here is an example question")
            unparseable = not asks_question and self.unparseable > 0
            self.unparseable -= unparseable
            grades = content.startswith(("Grade a student's answer", "Two answers"))  # a judge's or referee's call
            scripted = self.answers.pop(0) if self.answers and not (asks_question or grades or unparseable) else None
        if self.models is not None and body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            return 404, {}, json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                                  "code": "model_not_found"}}).encode()
        if fault == "401":
            return 401, {}, b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
        if fault == "429":
            return 429, {"Retry-After": "0.1"}, b'{"error": {"message": "slow down"}}'
        if fault == "500":
            return 500, {}, b'{"error": {"message": "boom"}}'
        if fault == "malformed":
            return 200, {}, b'{"id": "x", "choices": [{'
        if fault in ("html", "html-502"):
            page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body><h1>Bad Gateway</h1></body>\n</html>\n"
            return 200 if fault == "html" else 502, {"Content-Type": "text/html"}, page
        if fault == "plain":
            return 200, {"Content-Type": "text/plain"}, b"OK"
        if fault == "slow":
            time.sleep(self.slow)
        digest = hashlib.sha256(content.encode()).hexdigest()
        if asks_question:
            text = f"Question: what is 6 x 7, case {digest[:8]}?"
        elif content.startswith("Grade a student's answer"):  # llm-judge: a grade that depends on the prompt
            text = f"Score: {1 + int(digest[:4], 16) % 10}"
        elif content.startswith("Two answers"):  # LION's referee
            text = f"Answer 1: {1 + int(digest[:4], 16) % 10}\nAnswer 2: {1 + int(digest[4:8], 16) % 10}"
        else:
            text = "I am not sure." if unparseable else scripted or ANSWER
            if self.echo_key:
                text = f"(you sent {headers.get('Authorization', '')})\n{text}"
        if fault == "surrogate":
            text += "\ud800"  # json.dumps writes it as the escape \ud800, which no UTF-8 can hold
        elif fault == "huge":
            text = (text + " ") * (self.huge // (len(text) + 1))
        if fault != "drip":  # a drip reply never arrives in full
            with self.lock:
                self.answered[json.dumps(body, sort_keys=True)] += 1
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if fault == "parts":
            message["content"] = [{"type": "text", "text": text}]
        elif fault == "null-content":
            message["content"] = None
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
        if fault == "no-message":
            del choice["message"]
        data = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [] if fault == "no-choices" else [choice],
            "usage": {"prompt_tokens": len(content.split()), "completion_tokens": len(text.split()),
                      "total_tokens": len(content.split()) + len(text.split())},
        }
        headers = {"Content-Type": "text/plain"} if fault == "text-type" else {"X-Drip": "1"} if fault == "drip" else {}
        return 200, headers, json.dumps(data).encode()
