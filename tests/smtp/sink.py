"""A real SMTP server for the tests: Debian's aiosmtpd (python3-aiosmtpd), run by Debian's
/usr/bin/python3. Each message received is parsed with Python's email package, an SMTP client
and a MIME parser independent of Keyward's, and written as one JSON file into OUTDIR, so tests
read what a mail client would show. Recipients starting with "reject" are refused with 550, as a
server refuses an unknown mailbox.

Usage: sink.py PORT OUTDIR   (PORT 0 picks one; the port is printed on stdout once listening)
"""

import asyncio
import email
import json
import os
import sys
from email import policy

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "envelope_from": envelope.mail_from,
            "envelope_to": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        self.count += 1
        name = os.path.join(self.outdir, f"{os.getpid()}-{self.count:06d}.json")
        # Written whole, then renamed: a reader never sees half a mail.
        with open(name + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 Message accepted for delivery"


async def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    sink = Sink(outdir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.test", decode_data=False),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
