"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks of API teachers.

A stdlib ``ThreadingHTTPServer`` answering ``POST .../chat/completions`` as the two-call protocol
of ``teachers.llm`` expects: call 1 (a prompt starting "Here is an example question") gets a new
question, call 2 a worked answer ending in ``#### 42``; judge and referee prompts get grades (1-10)
that depend on the prompt. Faults are queued one per request: a 429
with Retry-After, a 500, an answer slower than a client's timeout, malformed JSON. ``delay`` adds
latency to every reply; ``peak`` is the most requests it answered at once. ``allow(n)`` answers
only n more requests and holds the rest (a client that stays mid-round as long as a test needs).

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


class _Server(ThreadingHTTPServer):
    # The stdlib's backlog of 5 drops the SYNs of a burst of concurrent connections, and the
    # client's 1 s SYN retransmit then dominates any latency measured through this server.
    request_queue_size = 128
    daemon_threads = True


class ChatServer:
    """Scripted chat completions; ``faults`` are used up one per request, in arrival order."""

    def __init__(self) -> None:
        self.faults: list[str] = []  # "429", "500", "slow", "malformed", or "ok"
        self.unparseable = 0  # this many answer calls get a reply without a final line
        self.echo_key = False  # answers quote the request's Authorization header (a leaky backend)
        self.slow = 1.0  # seconds a "slow" reply takes
        self.delay = 0.0  # seconds every reply takes
        self.requests = 0
        self.in_flight = self.peak = 0  # requests being answered now, and at most
        self.authorization: set[str] = set()
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
                with chat.lock:
                    chat.in_flight -= 1
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
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
            fault = self.faults.pop(0) if self.faults else None
            content = body["messages"][-1]["content"]
            asks_question = content.startswith("Here is an example question")
            unparseable = not asks_question and self.unparseable > 0
            self.unparseable -= unparseable
        if fault == "429":
            return 429, {"Retry-After": "0.1"}, b'{"error": {"message": "slow down"}}'
        if fault == "500":
            return 500, {}, b'{"error": {"message": "boom"}}'
        if fault == "malformed":
            return 200, {}, b'{"id": "x", "choices": [{'
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
            text = "I am not sure." if unparseable else ANSWER
            if self.echo_key:
                text = f"(you sent {headers.get('Authorization', '')})\n{text}"
        with self.lock:
            self.answered[json.dumps(body, sort_keys=True)] += 1
        data = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(content.split()), "completion_tokens": len(text.split()),
                      "total_tokens": len(content.split()) + len(text.split())},
        }
        return 200, {}, json.dumps(data).encode()
