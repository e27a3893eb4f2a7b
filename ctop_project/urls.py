"""URL routes: the admin and the team's pages (analysis app)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("analysis.urls")),
]
