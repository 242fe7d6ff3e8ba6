"""Whitespace-separated numbers in a text buffer, located and converted with NumPy vector operations.

Converting a raw skeleton file token by token in Python (or with np.loadtxt) costs 5-10 ms per NTU file;
here every step runs over whole arrays: token boundaries from the byte buffer, then the selected tokens'
characters gathered into a (tokens, width) matrix and turned into numbers with one matrix product.
The values are bit-identical to Python's float() (correctly rounded float64): a token of at most 14
digits with an optional '-' and '.' is an exact integer M over an exact power of ten 10**k, and one IEEE
division M / 10**k is correctly rounded. Any other token (exponent, 'nan', ...) goes through float().
"""
import numpy as np

_POW10 = 10.0 ** np.arange(23)  # exactly representable powers of ten
_MAX_WIDTH = 24  # longer tokens go through float()


class NotANumber(ValueError):
    """Token `index` (in TextTokens order) is not a number."""

    def __init__(self, index, text):
        super().__init__(f"{text!r} is not a number")
        self.index = index
        self.text = text


class TextTokens:
    """Token boundaries of a text buffer (tokens separated by bytes <= 32: space, tab, CR, LF, ...).

    start, end: (tokens,) byte offsets; line_end: (lines,) byte offset of each line's end; count: (lines,)
    tokens per line; first: (lines,) index of each line's first token. Lines are split at LF, so CRLF files
    give the same lines.
    """

    def __init__(self, data):
        self.data = data
        self.bytes = np.frombuffer(data, np.uint8)
        solid = np.zeros(self.bytes.size + 2, np.int8)
        solid[1:-1] = self.bytes > 32
        edges = np.flatnonzero(solid[1:] != solid[:-1])  # token starts and ends, alternating
        self.start, self.end = edges[0::2], edges[1::2]
        self.line_end = np.flatnonzero(self.bytes == 10)
        if self.bytes.size and self.bytes[-1] != 10:
            self.line_end = np.append(self.line_end, self.bytes.size)
        upto = np.searchsorted(self.start, self.line_end)  # tokens starting before each line end
        self.count = np.diff(upto, prepend=0)
        self.first = upto - self.count

    @property
    def num_lines(self):
        return len(self.count)

    def text(self, index):
        return self.data[self.start[index]:self.end[index]].decode("utf-8", "replace")

    def line_of(self, index):
        """0-based line of token `index`."""
        return int(np.searchsorted(self.first + self.count, index, side="right"))

    def floats(self, index):
        """float64 values of the tokens `index` (an int array of any shape), same shape.

        Raises NotANumber for the first token that float() rejects.
        """
        index = np.asarray(index)
        flat = index.ravel()
        if flat.size == 0:
            return np.zeros(index.shape)
        start, end = self.start[flat], self.end[flat]
        length = end - start
        width = int(min(length.max(), _MAX_WIDTH))
        # Right-aligned windows: row i holds the `width` bytes ending at token i's last character.
        padded = np.concatenate((np.full(width, 32, np.uint8), self.bytes))
        windows = np.ndarray((padded.size - width + 1,), np.dtype((np.void, width)), padded, 0, (1,))
        chars = windows[end].view(np.uint8).reshape(-1, width)
        inside = np.take(np.arange(width) >= width - np.arange(width + 1)[:, None], np.minimum(length, width), axis=0)
        digit_value = chars - np.uint8(48)
        is_digit = (digit_value < 10) & inside
        is_dot = (digit_value == 254) & inside  # '.' is 46 = 48 - 2
        # One product gives per token: digits + 1024 * dots, and sum of digit columns + 1024 * dot column.
        code = is_digit.astype(np.float32)
        code += is_dot.astype(np.float32) * 1024
        sums = code @ np.stack((np.ones(width, np.float32), np.arange(width, dtype=np.float32)), axis=1)
        num_dots = np.floor(sums[:, 0] / 1024)
        num_digits = sums[:, 0] - 1024 * num_dots
        decimals = np.where(num_dots == 1, width - 1 - np.floor(sums[:, 1] / 1024), 0).astype(np.intp)
        negative = self.bytes[start] == 45
        simple = ((num_digits + num_dots + negative == length) & (num_dots <= 1) & (num_digits >= 1)
                  & (num_digits <= 14) & (decimals <= 22))
        # Digits weighted by their column (the dot's column holds a 0), all exact integers below 10**15:
        # weighted = left * 10**(decimals + 1) + right, right < 10**decimals. The rounding error of
        # weighted / 10**decimals is below 0.12 * 10**-decimals and its fraction at most 1 - 10**-decimals,
        # so its floor is exactly 10 * left; the integer of all digits is left * 10**decimals + right.
        weighted = (digit_value * is_digit).astype(np.float64) @ _POW10[width - 1::-1].copy()
        scale = _POW10[np.minimum(decimals, 22)]
        shifted_left = np.floor(weighted / scale) * scale
        integer = np.where(num_dots == 1, shifted_left / 10 + (weighted - shifted_left), weighted)
        values = integer / scale
        values = np.where(negative, -values, values)
        for i in np.flatnonzero(~simple).tolist():
            token = self.data[start[i]:end[i]]
            try:
                values[i] = float(token)
            except ValueError:
                raise NotANumber(int(flat[i]), token.decode("utf-8", "replace")) from None
        return values.reshape(index.shape)
