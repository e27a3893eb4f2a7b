from django.urls import path

from . import views

app_name = "analysis"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("metrics", views.metrics, name="metrics"),
    path("alerts/", views.alert_list, name="alerts"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alert-resolve"),
    path("chains/<slug:name>/", views.chain_live, name="chain"),
    path("chains/<slug:name>/live/", views.chain_live_fragment, name="chain-fragment"),
    path("chains/<slug:name>/heights/", views.heights_grid, name="heights"),
    path("chains/<slug:name>/performance/", views.chain_performance, name="performance"),
    path("chains/<slug:name>/heights/<int:height>/", views.height_detail, name="height"),
    path("chains/<slug:name>/validators/<str:address>/", views.validator_detail, name="validator"),
    path("chains/<slug:name>/validators/<str:address>/watch/", views.validator_watch, name="validator-watch"),
]
