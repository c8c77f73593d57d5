from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from chargers import views

app_name = "chargers"

urlpatterns = [
    path("", views.fleet, name="home"),
    path("chargers/<int:pk>/", views.charger_detail, name="charger"),
    path("locations/", views.location_list, name="locations"),
    path("locations/<int:pk>/", views.location_detail, name="location"),
    # Daphne serves no static files by itself: with DEBUG on (the embedded default) Django
    # serves them; in production run `collectstatic` behind a web server.
    *staticfiles_urlpatterns(),
]
