"""A real SMTP server for klaxon's `smtp` test suite, on Debian's python3-aiosmtpd.

    server.py serve DIR MODE [CERT KEY]
        Listens on 127.0.0.1, on a port the system picks, and prints that port as the
        first line on stdout. Stops when its stdin closes (the test ended). MODE:
          plain          no TLS, no AUTH
          starttls-auth  STARTTLS required (CERT, KEY), then AUTH PLAIN or LOGIN as
                         USER / PASSWORD required; a wrong password gets 535
          tls            TLS from the first byte (CERT, KEY), no AUTH
          drop-data      like plain, but closes the connection once a message's data
                         has arrived, without answering it
        Each accepted message is written to DIR/N.eml (the raw bytes) with its envelope
        in DIR/N.json; each AUTH attempt is appended to DIR/auth.jsonl (never with the
        password).

    server.py parse FILE
        Prints a JSON view of the message in FILE made by Python's own MIME parser:
        headers (decoded), the top content type, the parts (content type, charset,
        decoded body) and every defect the parser found.
"""

import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import logging
import threading

# Only errors on the test's stderr: aiosmtpd warns about its own deprecated attribute,
# and about the garbage a TLS client sends a plain server (a case the suite tests).
logging.getLogger("mail.log").setLevel(logging.ERROR)

USER = "klaxon"
PASSWORD = "correct-horse-battery"


def serve(directory, mode, cert=None, key=None):
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class Store:
        async def handle_DATA(self, server, session, envelope):
            if mode == "drop-data":
                server.transport.abort()
                return "451 never sent"
            n = len([f for f in os.listdir(directory) if f.endswith(".eml")]) + 1
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "authenticated": bool(session.authenticated),
                "tls": session.ssl is not None,
            }
            with open(os.path.join(directory, f"{n}.json"), "w") as f:
                json.dump(meta, f)
            # Last, so a test that sees the .eml also sees the .json.
            with open(os.path.join(directory, f"{n}.eml"), "wb") as f:
                f.write(envelope.original_content)
            return "250 2.0.0 stored"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == PASSWORD.encode()
        )
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else None
        with open(os.path.join(directory, "auth.jsonl"), "a") as f:
            f.write(json.dumps({"mechanism": mechanism, "login": login, "success": ok}) + "\n")
        # Not handled: aiosmtpd then answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    context = None
    if mode in ("starttls-auth", "tls"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

    def factory():
        options = {"hostname": "klaxon-test-smtp"}
        if mode == "starttls-auth":
            options.update(
                tls_context=context,
                require_starttls=True,
                authenticator=authenticator,
                auth_required=True,
            )
        return SMTP(Store(), **options)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, "127.0.0.1", 0, ssl=context if mode == "tls" else None
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    # The test holds our stdin; when it ends, so do we.
    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    asyncio.run(main())


def parse(path):
    with open(path, "rb") as f:
        message = email.message_from_bytes(f.read(), policy=email.policy.default)
    parts = list(message.iter_parts()) if message.is_multipart() else [message]
    view = {
        "headers": [[name, str(value)] for name, value in message.items()],
        "content_type": message.get_content_type(),
        "parts": [
            {
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "body": part.get_content(),
            }
            for part in parts
        ],
        "defects": [repr(d) for d in message.defects]
        + [repr(d) for part in parts for d in part.defects],
    }
    json.dump(view, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(*sys.argv[2:])
    elif sys.argv[1:2] == ["parse"]:
        parse(sys.argv[2])
    else:
        sys.exit(__doc__)
