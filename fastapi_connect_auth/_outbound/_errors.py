"""The errors of calls to a product's REST API (the tree is in the package's docstring)."""


class ProductAPIError(Exception):
    """A call to a product's REST API could not be made. The message never holds a credential."""


class UnsafeRequestError(ProductAPIError):
    """Refused before sending: the request would carry a tenant's credentials to another origin or over plain http."""


class UnsafeRedirectError(UnsafeRequestError):
    """The product redirected to another origin, or from https to http; the redirect was not followed.

    `location` is where it pointed (to fetch it yourself without credentials,
    e.g. an attachment on a media host).
    """

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location
        """Where the refused redirect pointed."""


class TokenRequestError(ProductAPIError):
    """The authorization server did not issue an access token for a user.

    `status_code` is the token endpoint's HTTP status (`None` if it could not be
    reached) and `error` its OAuth error code (such as `invalid_grant`), if any.
    """

    def __init__(self, message: str, *, status_code: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The token endpoint's HTTP status."""
        self.error = error
        """The OAuth `error` code the endpoint answered, if any."""
