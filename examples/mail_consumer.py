#!/usr/bin/env python3
"""Sends the mail that mtask hands off with notify tasks.

A task such as
    SELECT mtask.schedule_at('welcome', now(), 'mtask_mail', command_type => 'notify',
                             payload => '{"to": "ann@example.com", "subject": "Hi", "body": "Welcome!"}');
runs pg_notify('mtask_mail', payload) in its run's transaction. This LISTENs on
that channel and sends each message through the local SMTP server, or, with
MAIL_OUTBOX set, appends it to that file. Usage: mail_consumer.py [conninfo]
"""
import json, os, select, smtplib, sys
from email.message import EmailMessage
import psycopg2

def send(mail):
    msg = EmailMessage()
    msg["From"] = os.environ.get("MAIL_FROM", "mtask@localhost")
    msg["To"], msg["Subject"] = mail["to"], mail["subject"]
    msg.set_content(mail.get("body", ""))
    if "MAIL_OUTBOX" in os.environ:
        with open(os.environ["MAIL_OUTBOX"], "a") as outbox:
            outbox.write(msg.as_string() + "\n")
    else:
        with smtplib.SMTP("localhost") as smtp:
            smtp.send_message(msg)

conn = psycopg2.connect(sys.argv[1] if len(sys.argv) > 1 else "")
conn.autocommit = True
conn.cursor().execute("LISTEN mtask_mail")
while True:
    select.select([conn], [], [], 60)
    conn.poll()
    while conn.notifies:
        send(json.loads(conn.notifies.pop(0).payload))
