// umamba: see ../context.h (stand-in for a Gloo header that LibTorch's wheel does not ship).
#pragma once
namespace gloo::transport {
class Device;
class UnboundBuffer;
}  // namespace gloo::transport
