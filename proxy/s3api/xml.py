"""S3 XML in and out: small bodies parsed safely, answers built as bytes.

Parsing refuses any document type declaration (so no entities, external or internal)
and strips namespaces, so handlers look for ``Delete/Object/Key`` whether or not the
client put S3's ``xmlns`` on the root. Building writes S3's namespace on the root
and nothing else; text is escaped by ElementTree.
"""

import re
import xml.etree.ElementTree as ET

from proxy.s3api.errors import MalformedXML

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# Characters XML 1.0 cannot carry at all (even escaped).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _local(tag):
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def parse(body, root=None):
    """The root Element of ``body`` (bytes) with namespaces stripped.

    Raises MalformedXML for anything that isn't one well-formed element tree, for a
    DOCTYPE/ENTITY declaration, and for a root not named ``root`` (when given).
    """
    if not body or not body.strip():
        raise MalformedXML()
    if _FORBIDDEN.search(body):
        raise MalformedXML("DTDs and entity declarations are not allowed")
    parser = ET.XMLParser()
    try:
        parser.feed(body)
        element = parser.close()
    except ET.ParseError:
        raise MalformedXML() from None
    for node in element.iter():
        if isinstance(node.tag, str):
            node.tag = _local(node.tag)
    if root is not None and element.tag != root:
        raise MalformedXML(f"expected a {root} element, got {element.tag}")
    return element


def find_text(element, path, default=None):
    """The text of ``path`` under ``element`` ("" for an empty element), else default."""
    found = element.find(path)
    if found is None:
        return default
    return found.text or ""


def clean_text(value):
    """``value`` as a str XML can carry (characters it can't are dropped)."""
    text = value if isinstance(value, str) else str(value)
    return _XML_INVALID.sub("", text)


class Builder:
    """Build an answer: ``b = Builder("ListAllMyBucketsResult"); b.add(b.root, "X", "1")``."""

    def __init__(self, root_tag, namespace=S3_NS):
        self.root = ET.Element(root_tag)
        if namespace:
            self.root.set("xmlns", namespace)

    @staticmethod
    def add(parent, tag, text=None):
        """A child element of ``parent`` holding ``text`` (None: empty element)."""
        child = ET.SubElement(parent, tag)
        if text is not None:
            child.text = clean_text(text)
        return child

    @staticmethod
    def add_all(parent, pairs):
        """Children from ``(tag, text)`` pairs, skipping those whose text is None."""
        for tag, text in pairs:
            if text is not None:
                Builder.add(parent, tag, text)
        return parent

    def tobytes(self):
        return DECLARATION + ET.tostring(self.root, encoding="utf-8", xml_declaration=False)


def tobytes(element):
    """An Element as a UTF-8 document with the XML declaration."""
    return DECLARATION + ET.tostring(element, encoding="utf-8", xml_declaration=False)
