#!/usr/bin/env python3
"""A minimal stand-in for the Telegram Bot API, for scripts/fuzz-api.

It answers what `chatorical telegram setup`, the delivery worker and the long poll
(getUpdates, always empty) call, for any bot token, with one forum supergroup in which the bot is an admin that may manage topics.
setWebhook's `secret_token` is written to SECRET_FILE, so the fuzzer can present it
on the webhook route and reach the update parser. Listens on 127.0.0.1, on a free
port that it writes to PORT_FILE.

    scripts/fake-bot-api.py PORT_FILE SECRET_FILE
"""

import json
import os
import sys
import time
import urllib.parse
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT_ID = 7000001
GROUP = -1001234567890
port_file, secret_file = sys.argv[1], sys.argv[2]
state = {"thread": 100, "message": 1000}

BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "fuzz_bot", "username": "fuzz_bot"}
GROUP_CHAT = {"id": GROUP, "type": "supergroup", "title": "Support", "is_forum": True}
PERMISSIONS = {
    k: True
    for k in (
        "can_send_messages can_send_audios can_send_documents can_send_photos can_send_videos "
        "can_send_video_notes can_send_voice_notes can_send_polls can_send_other_messages "
        "can_add_web_page_previews can_invite_users"
    ).split()
}


def answer(method, params):
    """(HTTP status, JSON answer) for one Bot API call."""
    if method == "getme":
        return 200, dict(BOT_USER, can_join_groups=True, can_read_all_group_messages=False,
                         supports_inline_queries=False, can_connect_to_business=False,
                         has_main_web_app=False)
    if method == "getchat":
        return 200, dict(GROUP_CHAT, accent_color_id=0, max_reaction_count=11,
                         accepted_gift_types={"unlimited_gifts": False, "limited_gifts": False,
                                              "unique_gifts": False, "premium_subscription": False},
                         permissions=dict(PERMISSIONS, can_change_info=False,
                                          can_pin_messages=False, can_manage_topics=False))
    if method == "getchatmember":
        return 200, {"user": BOT_USER, "status": "administrator", "can_be_edited": False,
                     "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
                     "can_manage_video_chats": True, "can_restrict_members": True,
                     "can_promote_members": False, "can_change_info": True,
                     "can_invite_users": True, "can_post_stories": False,
                     "can_edit_stories": False, "can_delete_stories": False,
                     "can_pin_messages": True, "can_manage_topics": True}
    if method == "setwebhook":
        with open(secret_file, "w") as f:
            f.write(str(params.get("secret_token", "")))
        return 200, True
    if method in ("deletewebhook", "sendchataction", "closeforumtopic", "reopenforumtopic",
                  "editforumtopic"):
        return 200, True
    if method == "getupdates":
        # A tenant the fuzzer switched to polling: a short long poll that brings nothing.
        try:
            wait = min(float(params.get("timeout", 0)), 1.0)
        except (TypeError, ValueError):
            wait = 0.0
        time.sleep(max(wait, 0.0))
        return 200, []
    if method == "createforumtopic":
        state["thread"] += 1
        return 200, {"message_thread_id": state["thread"], "name": str(params.get("name", "")),
                     "icon_color": 7322096}
    if method == "sendmessage":
        state["message"] += 1
        message = {"message_id": state["message"], "from": BOT_USER, "chat": GROUP_CHAT,
                   "date": int(time.time()), "text": str(params.get("text", ""))}
        if "message_thread_id" in params:
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        return 200, message
    return 404, None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        kind = self.headers.get("Content-Type") or ""
        try:
            if "json" in kind and body:
                params.update(json.loads(body))
            elif kind.startswith("multipart/form-data"):
                # setWebhook comes as multipart (it may carry a certificate file).
                head = b"Content-Type: " + kind.encode() + b"\r\n\r\n"
                form = BytesParser(policy=HTTP).parsebytes(head + body)
                for part in form.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    params[name] = part.get_payload(decode=True).decode(errors="replace")
            elif body:
                params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
        except ValueError:
            pass
        method = url.path.rsplit("/", 1)[-1].lower()
        status, result = answer(method, params)
        if status == 200:
            reply = {"ok": True, "result": result}
        else:
            reply = {"ok": False, "error_code": status, "description": "Not Found"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
