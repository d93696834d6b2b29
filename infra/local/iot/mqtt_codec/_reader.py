"""Reading one packet's variable header and payload: integers, strings, binary data, packet
identifiers and MQTT 5 properties, each failure a :class:`MalformedPacket`.
"""

from __future__ import annotations

from typing import Any

from infra.local.iot.mqtt_codec._primitives import (
    REASON_MALFORMED_PACKET,
    REASON_PROTOCOL_ERROR,
    MalformedPacket,
    PacketType,
)
from infra.local.iot.mqtt_codec._properties import (
    _PROPERTIES,
    Properties,
    _context_name,
    _Kind,
    _PropertySpec,
)


class _Reader:
    """Reads the variable header and payload of one packet, failing with MalformedPacket."""

    __slots__ = ("_data", "_end", "_pos", "_type", "_where")

    def __init__(self, data: bytes, packet_type: PacketType) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data)
        self._where = "packet"
        self._type = packet_type

    def fail(self, message: str, reason: int = REASON_MALFORMED_PACKET) -> MalformedPacket:
        return MalformedPacket(reason, message, self._type)

    def at_end(self) -> bool:
        return self._pos >= self._end

    def _take(self, size: int, what: str) -> int:
        start = self._pos
        end = start + size
        if end > self._end:
            raise self.fail(f"the {what} runs past the end of the {self._where}")
        self._pos = end
        return start

    def byte(self, what: str) -> int:
        return self._data[self._take(1, what)]

    def u16(self, what: str) -> int:
        start = self._take(2, what)
        return self._data[start] << 8 | self._data[start + 1]

    def u32(self, what: str) -> int:
        start = self._take(4, what)
        return int.from_bytes(self._data[start : start + 4], "big")

    def varint(self, what: str) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise self.fail(f"the {what} uses more than 4 bytes")

    def binary(self, what: str) -> bytes:
        size = self.u16(f"length of the {what}")
        start = self._take(size, what)
        return self._data[start : start + size]

    def utf8(self, what: str) -> str:
        raw = self.binary(what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise self.fail(f"the {what} is not well-formed UTF-8") from None
            raise self.fail(
                f"the {what} contains a UTF-16 surrogate (U+D800-U+DFFF), which MQTT forbids"
            ) from None
        if "\x00" in text:
            raise self.fail(f"the {what} contains the null character U+0000, which MQTT forbids")
        return text

    def packet_id(self) -> int:
        packet_id = self.u16("packet identifier")
        if packet_id == 0:
            raise self.fail(
                "the packet identifier is 0; it must be 1 to 65535", REASON_PROTOCOL_ERROR
            )
        return packet_id

    def rest(self) -> bytes:
        start = self._pos
        self._pos = self._end
        return self._data[start : self._end]

    def finish(self) -> None:
        left = self._end - self._pos
        if left:
            raise self.fail(f"{left} unexpected byte(s) left at the end of the packet")

    def properties(self, context: str) -> Properties:
        length = self.varint("property length")
        end = self._pos + length
        if end > self._end:
            raise self.fail(f"the property length ({length}) runs past the end of the packet")
        packet_end, self._end, self._where = self._end, end, "property section"
        props: Properties = {}
        while self._pos < end:
            prop_id = self.varint("property identifier")
            spec = _PROPERTIES.get(prop_id)
            if spec is None:
                raise self.fail(f"0x{prop_id:02X} is not an MQTT 5 property identifier")
            if context not in spec.contexts:
                raise self.fail(
                    f"property {spec.name} (0x{prop_id:02X}) is not allowed in "
                    f"{_context_name(context)}"
                )
            value = self._property_value(spec)
            if prop_id in props:
                if context not in spec.repeatable_in:
                    raise self.fail(
                        f"property {spec.name} (0x{prop_id:02X}) appears more than once in "
                        f"{_context_name(context)}",
                        REASON_PROTOCOL_ERROR,
                    )
                props[prop_id].append(value)
            else:
                props[prop_id] = [value] if spec.is_list else value
        self._end, self._where = packet_end, "packet"
        return props

    def _property_value(self, spec: _PropertySpec) -> Any:
        what = f"property {spec.name}"
        kind = spec.kind
        value: Any
        if kind is _Kind.BYTE:
            value = self.byte(what)
        elif kind is _Kind.TWO:
            value = self.u16(what)
        elif kind is _Kind.FOUR:
            value = self.u32(what)
        elif kind is _Kind.VARINT:
            value = self.varint(what)
        elif kind is _Kind.UTF8:
            return self.utf8(what)
        elif kind is _Kind.BINARY:
            return self.binary(what)
        else:
            return (self.utf8(f"{spec.name} name"), self.utf8(f"{spec.name} value"))
        if spec.boolean and value > 1:
            raise self.fail(f"{what} is {value}; it must be 0 or 1", REASON_PROTOCOL_ERROR)
        if spec.nonzero and value == 0:
            raise self.fail(f"{what} is 0, which is not allowed", REASON_PROTOCOL_ERROR)
        return value
