import NIOCore

extension ByteBuffer {
    /// Appends `command` as a RESP array of bulk strings (`*N\r\n$len\r\narg\r\n`…): binary-safe,
    /// written straight into the buffer that goes to the socket.
    ///
    /// hiredis's `redisFormatCommandArgv` produces the same bytes, but into a `malloc`ed string
    /// that would then be copied here and freed: writing RESP needs no parser's care.
    mutating func writeRedisCommand(_ command: RedisCommand) {
        writeInteger(UInt8(ascii: "*"))
        writeString(String(command.arguments.count))
        writeCRLF()
        for argument in command.arguments {
            writeInteger(UInt8(ascii: "$"))
            writeString(String(argument.count))
            writeCRLF()
            writeBytes(argument)
            writeCRLF()
        }
    }

    private mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A))
    }
}
