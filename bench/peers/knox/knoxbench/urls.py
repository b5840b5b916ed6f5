from django.urls import path
from knox.auth import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView


class Verify(APIView):
    """200 with a tiny body for a valid knox token (`Authorization: Token <token>`), 401 otherwise."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"active": True})


urlpatterns = [path("api/verify/", Verify.as_view())]
