"""The identity context's errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import BadRequest, Conflict, DomainError, Forbidden, NotFound


class EmailTaken(Conflict):
    # Never shown to a caller (registration answers the same either way); the service
    # turns it into a notice mailed to the address's owner.
    code = "EMAIL_TAKEN"
    message = "An account with this email already exists."


class InvalidCredentials(DomainError):
    code = "INVALID_CREDENTIALS"
    status = 401
    message = "The email or password is incorrect."


class InvalidRefreshToken(DomainError):
    code = "INVALID_REFRESH_TOKEN"
    status = 401
    message = "The refresh token is invalid, expired or revoked; log in again."


class RefreshTokenReused(DomainError):
    code = "REFRESH_TOKEN_REUSED"
    status = 401
    message = "This refresh token was already used; every session of this login is revoked."


class InvalidOneTimeToken(BadRequest):
    code = "INVALID_TOKEN"
    message = "The link is invalid, expired or already used."


class UserNotFound(NotFound):
    code = "USER_NOT_FOUND"
    message = "User not found."


class RoleNotFound(NotFound):
    code = "ROLE_NOT_FOUND"
    message = "Role not found."


class RoleExists(Conflict):
    code = "ROLE_EXISTS"
    message = "A role with this name already exists."


class BuiltinRole(Conflict):
    code = "ROLE_BUILTIN"
    message = "Built-in roles cannot be changed or deleted."


class ApiKeyNotFound(NotFound):
    code = "API_KEY_NOT_FOUND"
    message = "API key not found."


class PermissionNotHeld(Forbidden):
    code = "PERMISSION_NOT_HELD"
    message = "You cannot grant a permission you do not hold."
