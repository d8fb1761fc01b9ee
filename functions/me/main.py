"""/me: GET the caller's account (with generation usage, recent saved designs and notifications),
PATCH it {name?, email?, new_password + current_password?}, DELETE it {current_password}."""

from lib import account_page, accounts
from lib.http import Operation, http_function, json_response, no_content


@http_function(auth=True, tags=["accounts"], methods={
    "GET": Operation("The caller's account, usage, saved designs and notifications", response=account_page.MeAnswer),
    "PATCH": Operation(
        "Change name, email or password", body=accounts.ProfileUpdate, response=accounts.ProfileAnswer,
        errors=(403, 409, 429),
        description="Email and password changes need current_password (403 CURRENT_PASSWORD_REQUIRED; wrong ones "
                    "are throttled: 429 PASSWORD_THROTTLED). A password change returns a fresh token pair in "
                    "`tokens` and signs out every other session. 409 EMAIL_TAKEN."),
    "DELETE": Operation(
        "Delete the account (photos, designs, notifications) and deactivate it", body=accounts.DeleteAccountBody,
        status=204, errors=(403, 429),
        description="Needs current_password (403 CURRENT_PASSWORD_REQUIRED; wrong ones are throttled: 429 "
                    "PASSWORD_THROTTLED). 503 when a deletion fails: nothing is deactivated yet, retry."),
})
def me(request, user, body=None):
    if request.method == "PATCH":
        updated, tokens = accounts.update_profile(user, body)
        reply = accounts.ProfileAnswer(user=accounts.public_user(updated))
        if tokens is not None:
            reply.tokens = accounts.TokenPair.model_validate(tokens)
        return json_response(reply)
    if request.method == "DELETE":
        account_page.delete_account(user, body)
        return no_content()
    return json_response(account_page.overview(user))
