"""A real GCS emulator on 127.0.0.1 that TensorFlow's own gs:// filesystem talks to.

TensorFlow hard-codes Google's endpoints but honours `https_proxy` and `CURL_CA_BUNDLE`, so:
  TF --CONNECT www.googleapis.com:443--> LoopbackTlsProxy (terminates TLS with a leaf cert of a throwaway CA)
     --plain HTTP--> gcp-storage-emulator (in this process)
The google-cloud-storage client reaches the emulator directly through STORAGE_EMULATOR_HOST.
"""

import datetime
import http.client
import http.server
import json
import os
import socket
import socketserver
import ssl
import struct
import threading
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gcp_storage_emulator.handlers import objects as emulator_objects
from gcp_storage_emulator.server import create_server

from tests.conftest import free_port

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")


def _patch_empty_media_uploads():
    """The emulator reads the length of a missing body on zero-byte uploads (TF's directory markers)."""
    original = emulator_objects._media_upload
    if getattr(original, "_accepts_empty_body", False):
        return

    def media_upload(request, response, storage):
        if request.data is None:
            request._data = b""
        return original(request, response, storage)

    media_upload._accepts_empty_body = True
    emulator_objects._media_upload = media_upload


def _patch_generation_preconditions():
    """Real GCS refuses a write or delete whose ifGenerationMatch does not hold (0: the object must not exist)
    with 412; the emulator ignores the parameter. The job lock depends on it, so add it."""
    from http import HTTPStatus

    from gcp_storage_emulator import server as emulator_server
    from gcp_storage_emulator.exceptions import NotFound

    if getattr(emulator_objects, "_checks_generations", False):
        return

    def holds(request, storage, bucket, name) -> bool:
        wanted = request.query.get("ifGenerationMatch")
        if not wanted or not name:
            return True
        try:
            current = str(storage.get_file_obj(bucket, name).get("generation", "0"))
        except NotFound:
            current = "0"
        return current == wanted[0]

    def refuse(response):
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you specified did "
                                 "not hold.", "errors": [{"reason": "conditionNotMet"}]}})

    def guarded(handler, name_of):
        def checked(request, response, storage, *args, **kwargs):
            if not holds(request, storage, request.params["bucket_name"], name_of(request)):
                return refuse(response)
            return handler(request, response, storage, *args, **kwargs)
        return checked

    def upload_name(request):
        if "name" in request.query:
            return request.query["name"][0]
        data = request.data if isinstance(request.data, dict) else {}
        return (data.get("meta") or {}).get("name") or data.get("name")

    insert = guarded(emulator_objects.insert, upload_name)
    delete = guarded(emulator_objects.delete, lambda request: request.params["object_id"])
    for _, methods in emulator_server.HANDLERS:
        for method, handler in list(methods.items()):
            if handler is emulator_objects.insert:
                methods[method] = insert
            elif handler is emulator_objects.delete:
                methods[method] = delete
    emulator_objects.insert = insert
    emulator_objects._checks_generations = True


def _write_test_certificates(directory: str) -> tuple[str, str, str]:
    """A CA and one leaf certificate for Google's storage hosts; returns (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcs emulator test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in GOOGLE_HOSTS]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "leaf.pem", "leaf.key"))
    with open(paths[0], "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as handle:
        handle.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as handle:
        handle.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


class _ForwardingHandler(http.server.BaseHTTPRequestHandler):
    """Serves decrypted HTTPS requests by replaying them over plain HTTP to the emulator."""

    protocol_version = "HTTP/1.1"
    emulator_port = 0
    unreadable: set = set()  # object names whose content reads get GCS's 403 (listing and metadata still work)
    faults: list = []  # injected faults, see FakeGcs.inject

    def log_message(self, *args):
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reads_content(self, path: str) -> bool:
        return self.command == "GET" and ("alt=media" in path or not path.startswith("/storage/v1/"))

    def _send_error(self, code: int, phrase: str, message: str, reason: str) -> None:
        self._send_json(code, phrase, {"error": {"code": code, "message": message, "errors": [{"reason": reason}]}})

    def _send_json(self, code: int, phrase: str, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _refuse_read(self) -> bool:
        path = urllib.parse.unquote(self.path)
        if not self._reads_content(path) or not any(f"/{name}" in path for name in self.unreadable):
            return False
        self._send_error(403, "Forbidden", "Caller does not have storage.objects.get access", "forbidden")
        return True

    def _inject_fault(self) -> bool:
        """Applies the first matching rule of `faults` (see FakeGcs.inject): a 503 or a connection reset."""
        path = urllib.parse.unquote(self.path)
        kind = "read" if self._reads_content(path) else "write" if self.command in ("POST", "PUT") else "other"
        for rule in self.faults:
            if rule["kind"] == kind and rule["object"] in path and (rule["times"] is None or rule["hits"] < rule["times"]):
                rule["hits"] += 1
                if rule["error"] == "reset":  # RST instead of a response, as a dropped connection gives
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                else:
                    self._send_error(503, "Service Unavailable", "Service Unavailable (injected)", "backendError")
                return True
        return False

    def _grant_token(self) -> bool:
        """Google's OAuth token endpoint, for processes that hold user credentials (FakeGcs.beam_env): any
        refresh gets a bearer token, which the emulator ignores."""
        if self.headers.get("Host", "").split(":")[0] != "oauth2.googleapis.com":
            return False
        self._send_json(200, "OK", {"access_token": "emulator-token", "expires_in": 3600, "token_type": "Bearer"})
        return True

    def _forward(self):
        body = self._body()
        if self._grant_token() or self._refuse_read() or self._inject_fault():
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "proxy-connection")}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection("127.0.0.1", self.emulator_port, timeout=60)
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            if key.lower() == "location":
                value = value.replace("http://", "https://", 1)
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


class _ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_connect_handler(tls_context: ssl.SSLContext, forwarding_handler):
    class ConnectHandler(socketserver.StreamRequestHandler):
        def handle(self):
            request_line = self.rfile.readline().decode("latin-1")
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            if not request_line.startswith("CONNECT "):
                self.wfile.write(b"HTTP/1.1 405 Only CONNECT\r\nContent-Length: 0\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            try:
                tls = tls_context.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                return
            forwarding_handler(tls, self.client_address, self.server)

    return ConnectHandler


class FakeGcs:
    """Starts the emulator and the proxy; `env` is what a TensorFlow process needs to use them."""

    def __init__(self, workdir: str):
        _patch_empty_media_uploads()
        _patch_generation_preconditions()
        self.emulator_port = free_port()
        self.server = create_server("127.0.0.1", self.emulator_port, in_memory=True)
        self.server.start()
        self.ca_path, cert_path, key_path = _write_test_certificates(workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.unreadable = set()  # object names ("data/x.tfrecord") this job's credentials may list but not read
        self.faults = []
        handler = type("Forwarding", (_ForwardingHandler,), {"emulator_port": self.emulator_port,
                                                             "unreadable": self.unreadable, "faults": self.faults})
        self.proxy = _ConnectProxy(("127.0.0.1", 0), _make_connect_handler(context, handler))
        self.proxy_port = self.proxy.server_address[1]
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()

    def inject(self, kind: str, object_part: str, error: str = "503", times: int | None = 1) -> dict:
        """From now on, the next `times` (None: every) `kind` ('read' of content, or 'write': an upload or a
        copy) requests whose object path contains `object_part` fail with `error` ('503' or 'reset').
        Returns the rule; its 'hits' counts the requests it failed."""
        rule = {"kind": kind, "object": object_part, "error": error, "times": times, "hits": 0}
        self.faults.append(rule)
        return rule

    @property
    def env(self) -> dict:
        proxy = f"http://127.0.0.1:{self.proxy_port}"
        return {"https_proxy": proxy, "HTTPS_PROXY": proxy, "no_proxy": "127.0.0.1,localhost",
                "NO_PROXY": "127.0.0.1,localhost", "CURL_CA_BUNDLE": self.ca_path, "NO_GCE_CHECK": "true",
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy", "GCS_RETRY_CONFIG_MAX_RETRIES": "1",
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.emulator_port}"}

    @property
    def beam_env(self) -> dict:
        """`env` plus Application Default Credentials (a user's, refreshed at the proxy): Beam's GCS filesystem
        looks for them in every process and, finding none, retries for ~25 s before going anonymous."""
        credentials = os.path.join(os.path.dirname(self.ca_path), "application_default_credentials.json")
        if not os.path.exists(credentials):
            with open(credentials, "w") as handle:
                json.dump({"type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
                           "refresh_token": "emulator"}, handle)
        return {**self.env, "GOOGLE_APPLICATION_CREDENTIALS": credentials, "REQUESTS_CA_BUNDLE": self.ca_path}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = self.env["STORAGE_EMULATOR_HOST"]
        return storage.Client(project="test-project", credentials=AnonymousCredentials())

    def close(self):
        self.proxy.shutdown()
        self.server.stop()
