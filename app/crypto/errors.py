class DecryptionError(Exception):
    """A ciphertext failed authentication, its key commitment, or its format check.

    Deliberately carries no detail: which check failed is not something a
    caller (or an attacker probing through one) should learn.
    """

    def __init__(self) -> None:
        super().__init__("ciphertext could not be authenticated")
