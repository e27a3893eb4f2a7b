"""The live consensus page's websocket (Channels): stream_events commits a batch, the page's socket
hears about it. Real Redis channel layer, real StreamConsumer, the project's ASGI routing."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from analysis.routing import websocket_urlpatterns
from consensus.ingest import LivePublisher

from .protocol_fixtures import frames
from .streamhelpers import consumer, drain, fill


def communicator(path: str, user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user  # what AuthMiddlewareStack puts there from the session cookie
    return comm


@pytest.mark.django_db(transaction=True)
def test_anonymous_sockets_and_unknown_chains_are_refused(chain, django_user_model):
    user = django_user_model.objects.create_user("member", password="pw-for-tests")

    async def attempt(path, who):
        comm = communicator(path, who)
        connected, code = await comm.connect()
        await comm.disconnect()
        return connected, code

    assert async_to_sync(attempt)("/ws/chains/testnet/", AnonymousUser()) == (False, 4403)
    assert async_to_sync(attempt)("/ws/chains/nope/", user) == (False, 4403)
    assert async_to_sync(attempt)("/ws/chains/testnet/", user)[0] is True


def stream_events_once(chain, client, publisher) -> None:
    """What stream_events does, in a worker thread that closes its own database connection."""
    from django.db import connection

    try:
        drain(consumer(chain, client, publisher=publisher, block_ms=50))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_committed_batch_reaches_the_open_page(chain, redis_client, django_user_model):
    user = django_user_model.objects.create_user("member", password="pw-for-tests")
    lines = list(frames("ws_frames_normal.jsonl"))
    fill(redis_client, chain.name, lines)

    async def scenario():
        from asgiref.sync import sync_to_async

        comm = communicator("/ws/chains/testnet/", user)
        connected, _ = await comm.connect()
        assert connected
        publisher = LivePublisher()
        publisher.start()
        try:
            await sync_to_async(stream_events_once, thread_sensitive=False)(chain, redis_client, publisher)
            first = await comm.receive_json_from(timeout=5)
        finally:
            publisher.stop()
            await comm.disconnect()
        return first

    message = async_to_sync(scenario)()
    heights = {int(line.split('"height":"')[1].split('"')[0]) for line in lines if '"height":"' in line}
    assert message["chain"] == "testnet"
    assert message["height"] in heights and message["round"] >= 0


@pytest.mark.django_db(transaction=True)
def test_the_socket_signs_in_with_the_session_cookie_and_signing_out_closes_it(chain, django_user_model):
    """The project's ASGI stack as a browser meets it: the session cookie authenticates the socket
    (no injected user), and signing out over HTTP closes the open socket at once."""
    from django.test import Client

    from ctop_project.asgi import application

    django_user_model.objects.create_user("member", password="pw-for-tests")
    browser = Client()
    assert browser.login(username="member", password="pw-for-tests")
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]

    async def scenario():
        from asgiref.sync import sync_to_async

        anonymous = WebsocketCommunicator(application, "/ws/chains/testnet/", headers=headers[1:])
        assert (await anonymous.connect())[0] is False
        comm = WebsocketCommunicator(application, "/ws/chains/testnet/", headers=headers)
        connected, _ = await comm.connect()
        assert connected
        token = browser.cookies["csrftoken"].value if "csrftoken" in browser.cookies else ""
        response = await sync_to_async(browser.post)("/accounts/logout/", {"csrfmiddlewaretoken": token})
        assert response.status_code == 200
        closed = await comm.receive_output(timeout=5)
        await comm.wait()
        return closed

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
def test_deactivating_an_account_closes_its_open_pages(chain, django_user_model):
    """`manage.py team deactivate` (or unticking "active" in the admin): the account's open live
    pages close at once, other accounts' stay open."""
    from django.core.management import call_command

    member = django_user_model.objects.create_user("member", password="pw-for-tests")
    other = django_user_model.objects.create_user("other", password="pw-for-tests")

    async def scenario():
        from asgiref.sync import sync_to_async

        mine, theirs = communicator("/ws/chains/testnet/", member), communicator("/ws/chains/testnet/", other)
        assert (await mine.connect())[0] and (await theirs.connect())[0]
        await sync_to_async(call_command, thread_sensitive=False)("team", "deactivate", "member")
        closed = await mine.receive_output(timeout=5)
        still_open = await theirs.receive_nothing(timeout=0.5)
        await theirs.disconnect()
        return closed, still_open

    assert async_to_sync(scenario)() == ({"type": "websocket.close", "code": 4401}, True)
