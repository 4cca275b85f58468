"""An HTML reader for tests: image sources, external references, visible text, balanced tags."""

from html.parser import HTMLParser


class Page(HTMLParser):
    """Feed it a document; then `open_tags` is empty when every tag closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.open_tags: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        assert self.open_tags and self.open_tags[-1] == tag, f"unbalanced </{tag}>"
        self.open_tags.pop()

    def handle_data(self, data):
        self.text += data


def read_page(document: str) -> Page:
    """Parse `document` whole and return what the reader found."""
    page = Page()
    page.feed(document)
    page.close()
    return page
