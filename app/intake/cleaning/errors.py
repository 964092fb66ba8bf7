"""What cleaning refuses a picture with, in the words the submitter is shown."""

from __future__ import annotations

from app.kit.errors import N_, AppError, InvalidInput, PayloadTooLarge


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"
    public_message = N_("A picture has more pixels than this service accepts. Send a smaller version of it.")


class ImageExceedsMemoryBudget(ImageTooLarge):
    """Cleaning this picture alone would need more memory than the whole budget.

    Same code and words as ImageTooLarge: for the submitter the remedy is the same (a smaller
    picture), and a different wording would be one more string to translate.
    """


class ImageCleaningBusy(AppError):
    """Other pictures kept the memory budget (or the caller's cleaning slots) for longer than an
    image may wait: 503, try again shortly (the error handler adds Retry-After)."""

    status = 503
    code = "busy"
    public_message = N_("Too many reports are being sent right now. Please try again in a minute.")


class UnreadableImage(InvalidInput):
    code = "unreadable_image"
    public_message = N_(
        "A picture could not be read. It may be damaged; try sending it again or as a screenshot."
    )
