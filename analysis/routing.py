from django.urls import path

from .consumers import ChainLiveConsumer

websocket_urlpatterns = [
    path("ws/chains/<slug:name>/", ChainLiveConsumer.as_asgi()),
]
