"""URL routes: the admin (staff only), the team's own sign-in pages, and the team's pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

# The team signs in here, not through the admin: any active account may, staff or not. The admin's
# own login stays staff-only.
accounts = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("", include("analysis.urls")),
]
